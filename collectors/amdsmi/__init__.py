"""AMD GPUs (Instinct, Radeon) through AMD's amdsmi Python bindings over ROCm's libamd_smi.so: energy
counters (`collector`), per-process usage (`usage`), the per-GPU state both keep (`gpus`), and amdsmi's
errors translated once (`errors`).

Imports collectors level 1, `collectors.gpu` (the read loop and failure handling it shares with
nvml) and its own modules only.
"""
