"""`fal evaluate`: checkpoints.py dispatches metric names and scores checkpoints per feedback step, files.py
scores folders and arrays, fid.py computes FID/KID between folders, statistics and checkpoints."""
