"""`python -m falcli` is the same as `fal`."""
from falcli.cli import app

app()
