"""fal: feedback adversarial learning (Huh, Sun & Zhang, CVPR 2019) and its successors, from YAML recipes."""

__version__ = "0.1.0"
