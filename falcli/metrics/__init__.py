"""Evaluation metrics: FID/KID, LPIPS, L1/PSNR/SSIM, depth errors, FCN-scores and voxel-shape metrics.

Each value is only comparable under the same protocol, so every loader or result records the one it used.
"""
