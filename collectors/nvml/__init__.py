"""NVIDIA GPUs through NVML: energy counters (`collector`), per-process usage (`usage`), the per-GPU
state both keep (`gpus`), and NVML's errors translated once (`errors`).

Imports collectors level 1, `collectors.gpu` (the read loop and failure handling it shares with
amdsmi) and its own modules only.
"""
