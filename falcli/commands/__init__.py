"""One module per `fal` verb (cli.py parses the flags and calls these); commands may call each other
(`fal toy` and `fal ablate` train through train.py), never the other way round from below."""
