"""Packaging beyond pyproject.toml: the top-level recipes/ folder ships as the package `falcli.recipes`.

The user types `fal train recipes/cityscapes.yaml` in the checkout, so the recipes stay at the top level; an
installed fal finds the same files through importlib.resources (falcli.config.shipped_recipes_dir).
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["falcli", "falcli.*"]) + ["falcli.recipes"],
    package_dir={"falcli.recipes": "recipes"},
    package_data={"falcli.recipes": ["*.yaml"]},
)
