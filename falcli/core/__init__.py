"""What every command and task stands on: the feedback loop, losses, runtime (devices, processes, shards),
CUDA graphs, checkpoints, sample files and pictures. Nothing here imports a command."""
