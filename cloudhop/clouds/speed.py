"""How fast an offer trains: measured throughput from past runs, else a GPU speed table.

Pure logic (the store I/O is cloudhop.costs.records). Placement asks `SpeedModel.samples_per_s`
for each offer and turns the answer into expected hours = work / throughput.

Where a figure comes from, in order:
1. measured: the median samples/s of this offer (same cloud, same machine) over past runs;
2. scaled: the median of every measured run divided by its GPU's relative speed, times this
   offer's GPU's relative speed (one measured cloud tells what the others would do);
3. none: no history at all. Placement then keeps its bytes-based estimate, divided by the GPU's
   relative speed against the reference GPU (RELATIVE_SPEED_SOURCE says where the figures are from).

CPU offers have no entry in the table: one CPU offer's measured throughput stands for the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Sequence

from cloudhop.clouds.catalog import Offer

__all__ = ["Throughput", "SpeedModel", "Speed", "offer_key", "relative_speed", "RELATIVE_SPEED",
           "RELATIVE_SPEED_SOURCE", "REFERENCE_GPU"]

# Dense FP16/BF16 Tensor Core TFLOPS (no sparsity), from NVIDIA's data sheets of each GPU
# (H100 SXM, H200, A100, L40S, A10, L4, T4, V100 SXM2), as published up to 2025-06. Only the
# ratios matter. A small tabular net is bound by memory and launch overheads more than by
# TFLOPS, so these ratios overstate the fast GPUs: they are the fallback until a run is measured.
RELATIVE_SPEED_SOURCE = "NVIDIA data sheets, dense FP16 Tensor TFLOPS, as of 2025-06"
RELATIVE_SPEED: dict[str, float] = {
    "B200": 2250.0,
    "H200": 989.0,
    "H100": 989.0,
    "L40S": 362.0,
    "A100": 312.0,
    "A10": 125.0,
    "A10G": 125.0,  # AWS's variant of the A10; NVIDIA publishes no separate sheet
    "V100": 125.0,
    "L4": 121.0,
    "T4": 65.0,
}
REFERENCE_GPU = "A100"  # the GPU the bytes-based default rate (placement.DEFAULT_HOURS_PER_GB) is taken for


def relative_speed(gpu: str) -> float | None:
    """The GPU's speed against REFERENCE_GPU (1.0 = as fast); None for a GPU not in the table or a CPU."""
    own = RELATIVE_SPEED.get(gpu.upper())
    return own / RELATIVE_SPEED[REFERENCE_GPU] if own else None


def offer_key(offer: Offer) -> str:
    """Names an offer within its cloud: its machine type, else its GPU and count."""
    return offer.instance or f"{offer.gpu.lower()}x{offer.count}"


@dataclass(frozen=True)
class Throughput:
    """One successful training attempt's measured speed on one offer."""
    cloud: str
    offer: str  # offer_key
    gpu: str
    samples_per_s: float
    at: datetime | None = None
    model: str | None = None


@dataclass(frozen=True)
class Speed:
    samples_per_s: float
    source: str  # why this figure: measured, or scaled from which measurements


class SpeedModel:
    """Throughput of each offer from past runs (see the module doc for the order of sources)."""

    def __init__(self, history: Sequence[Throughput] = ()):
        self.history = [h for h in history if h.samples_per_s > 0]

    def samples_per_s(self, cloud: str, offer: Offer) -> Speed | None:
        key = offer_key(offer)
        own = [h.samples_per_s for h in self.history if h.cloud == cloud and h.offer == key]
        if own:
            return Speed(median(own), f"measured: median of {len(own)} run(s) on {cloud} {key}")
        if offer.is_cpu:
            cpus = [h.samples_per_s for h in self.history if h.gpu.lower() == "cpu"]
            if cpus:
                return Speed(median(cpus), f"as fast as other CPU offers measured ({len(cpus)} run(s))")
            return None
        rel = relative_speed(offer.gpu)
        per_unit = [h.samples_per_s / r for h in self.history if (r := relative_speed(h.gpu))]
        if rel and per_unit:
            return Speed(median(per_unit) * rel, f"{offer.gpu} speed table ({rel:.2f}x {REFERENCE_GPU}) "
                                                 f"applied to {len(per_unit)} measured run(s)")
        return None
