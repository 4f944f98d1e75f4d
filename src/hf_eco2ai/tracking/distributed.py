"""Multi-process runs: which process measures what, and run totals summed across processes.

Each process measures the GPU it trains on; node-wide counters (RAPL package and DRAM) are read
by the node's local main process only, so every joule is counted once. Totals are summed with
the job's own ``torch.distributed`` process group, only when the caller asks (log steps, train
end) and never from the sampler thread. Side effects: collectives on the default process group;
``torch`` is imported only where a process group may exist. Units: joules, grams, watts.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_eco2ai.errors import ConfigError
from hf_eco2ai.tracking.snapshot import TOTAL_FIELDS, TrackerSnapshot
from hf_eco2ai.units import GRAMS_PER_KG, JOULES_PER_KWH

if TYPE_CHECKING:
    from hf_eco2ai.config import CarbonConfig
    from hf_eco2ai.energy.base import Meter
    from hf_eco2ai.energy.nvml import GpuId
    from hf_eco2ai.tracking.tracker import CarbonTracker

logger = logging.getLogger(__name__)

#: Meters that read a whole node's counters, not one process's devices.
NODE_LEVEL_METERS = frozenset({"rapl"})

#: Launcher variables, first match wins: torchrun/Accelerate, DeepSpeed, Open MPI.
_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK")
_WORLD_SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE")
_LOCAL_WORLD_SIZE_VARS = ("LOCAL_WORLD_SIZE", "LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE")
_NODE_RANK_VARS = ("GROUP_RANK", "NODE_RANK", "CROSS_RANK")

#: Order of the figures in the all-reduced vector.
_REDUCED_FIELDS = (
    *TOTAL_FIELDS,
    "power_watts",
    "energy_rate_kwh_per_hour",
    "co2_rate_kg_per_hour",
)


@dataclass(frozen=True)
class Placement:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank, 0 to ``world_size - 1``.
        local_rank: Rank within the node.
        world_size: Processes in the job.
        local_world_size: Processes on this node.
        node_rank: The node's index in the job.
        host: This machine's hostname.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    host: str = ""

    @property
    def is_main(self) -> bool:
        """The one process that writes the report and logs."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """The one process per node that reads node-wide counters."""
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "local_rank": self.local_rank,
            "world_size": self.world_size,
            "local_world_size": self.local_world_size,
            "node_rank": self.node_rank,
            "host": self.host,
        }


def detect_placement(environ: Mapping[str, str] | None = None) -> Placement:
    """This process's place from the launcher's variables, corrected by ``torch.distributed``.

    Args:
        environ: Environment to read (default ``os.environ``).

    Raises:
        ConfigError: A launcher variable holds something that is not a whole number >= 0.
    """
    env = os.environ if environ is None else environ
    rank = _env_int(env, _RANK_VARS) or 0
    world = _env_int(env, _WORLD_SIZE_VARS) or 1
    group = _process_group()
    if group is not None:
        rank, world = group
    local_rank = _env_int(env, _LOCAL_RANK_VARS)
    local_world = _env_int(env, _LOCAL_WORLD_SIZE_VARS)
    if local_rank is None:
        local_rank, local_world = _guess_local(rank, world, local_world)
    local_world = max(local_world or 1, local_rank + 1)
    node_rank = _env_int(env, _NODE_RANK_VARS)
    if node_rank is None:
        node_rank = rank // local_world
    host = env.get("HF_ECO2AI_HOST") or socket.gethostname()
    return Placement(rank, local_rank, max(world, 1), local_world, node_rank, host)


def _guess_local(rank: int, world: int, local_world: int | None) -> tuple[int, int]:
    """Local rank and size where the launcher set no LOCAL_RANK."""
    if world <= 1:
        return 0, 1
    if local_world:
        return rank % local_world, local_world
    # Shortcoming: without LOCAL_RANK nothing says which processes share a node; one per node is
    # assumed, so several processes on one node would each read the node's RAPL counters.
    logger.warning(
        "hf-eco2ai: rank %d of %d but no LOCAL_RANK/LOCAL_WORLD_SIZE in the environment; "
        "assuming one process per node. Launch with torchrun, accelerate or deepspeed.",
        rank,
        world,
    )
    return 0, 1


def _env_int(env: Mapping[str, str], names: Sequence[str]) -> int | None:
    for name in names:
        raw = env.get(name)
        if raw is None or not raw.strip():
            continue
        if not raw.strip().isdigit():
            raise ConfigError(
                name, raw, f"{name} must be a whole number >= 0 (set by the launcher)"
            )
        return int(raw)
    return None


def _process_group() -> tuple[int, int] | None:
    """(rank, world size) of the default process group, if torch already set one up."""
    dist = _initialised_dist()
    if dist is None:
        return None
    return int(dist.get_rank()), int(dist.get_world_size())


def _initialised_dist() -> Any:
    """``torch.distributed`` when the job initialised it; never imports torch itself."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    return dist


# -- ownership ------------------------------------------------------------------------------------


def visible_devices(environ: Mapping[str, str]) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` entries in CUDA order (index or UUID), None when it is unset."""
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    entries: list[str] = []
    for part in raw.split(","):
        entry = part.strip()
        # CUDA stops at the first invalid entry; -1 and empty are the common ones.
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return entries


def current_cuda_device() -> int | None:
    """The CUDA device the framework placed this process on, if CUDA is initialised."""
    if "torch" not in sys.modules:
        return None
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):  # type: ignore[no-untyped-call]
        return None
    return int(torch.cuda.current_device())


def owned_gpu_ids(
    placement: Placement,
    environ: Mapping[str, str],
    *,
    configured: Sequence[GpuId] | None = None,
    cuda_device: int | None = None,
) -> list[GpuId] | None:
    """NVML ids of the GPUs this process owns; None means "every visible GPU", [] none.

    Explicit ``configured`` ids win. A process alone on its node owns every GPU it sees (it may
    spread a model over them). With several processes per node, each owns the device it trains
    on: ``cuda_device`` (the current CUDA device), else its local rank, as an index into
    ``CUDA_VISIBLE_DEVICES``, so index and UUID entries both name the physical GPU.
    """
    if configured is not None:
        return list(configured)
    if placement.local_world_size <= 1:
        return None
    device = cuda_device if cuda_device is not None else current_cuda_device()
    if device is None:
        device = placement.local_rank
    visible = visible_devices(environ)
    if visible is None:
        return [device]
    if device >= len(visible):
        logger.info(
            "Process of local rank %d trains on device %d but CUDA_VISIBLE_DEVICES lists %d; "
            "it measures no GPU.",
            placement.local_rank,
            device,
            len(visible),
        )
        return []
    entry = visible[device]
    return [int(entry) if entry.isdigit() else entry]


def build_owned_meters(
    config: CarbonConfig,
    placement: Placement,
    *,
    nvml: Any = None,
    environ: Mapping[str, str] | None = None,
    powercap_root: Path | str | None = None,
    clock: Callable[[], float] = time.monotonic,
    cuda_device: int | None = None,
    powercap_read_file: Callable[[Path], str] | None = None,
) -> tuple[list[Meter], list[str]]:
    """Start the meters of what this process owns: its GPUs, and node counters on local main.

    CPU and RAM *estimates* cover this process's own tree, so every process keeps them; RAPL
    reads the whole node, so only the local main process keeps it. Where RAPL is readable the
    other processes estimate nothing (the node counter already includes them).

    Args:
        config: Run settings (``gpu_ids``, ``track_*``, TDP and W/GB figures).
        placement: This process's place in the job.
        nvml: pynvml-like module (tests).
        environ: Environment for ``CUDA_VISIBLE_DEVICES`` (default ``os.environ``).
        powercap_root: Powercap directory (default ``config.powercap_root``).
        clock: Monotonic seconds (tests).
        cuda_device: This process's CUDA device, if known better than torch knows it.
        powercap_read_file: Reads one sysfs file (tests).

    Returns:
        The started meters and the warnings given.
    """
    from hf_eco2ai.energy.discovery import build_meters
    from hf_eco2ai.energy.nvml import nvidia_driver_present
    from hf_eco2ai.energy.rapl import read_sysfs

    env = os.environ if environ is None else environ
    gpu_ids = owned_gpu_ids(placement, env, configured=config.gpu_ids, cuda_device=cuda_device)
    if gpu_ids is not None and config.gpu_ids is None and nvml is None:
        # No driver: let discovery skip GPUs quietly, as it does for one process.
        gpu_ids = None if nvidia_driver_present() is False else gpu_ids
    meters, warnings = build_meters(
        track_gpu=config.track_gpu and gpu_ids != [],
        track_cpu=config.track_cpu,
        track_ram=config.track_ram,
        include_dram=config.include_dram,
        gpu_ids=gpu_ids,
        powercap_root=powercap_root if powercap_root is not None else config.powercap_root,
        cpu_tdp_watts=config.cpu_tdp_watts,
        ram_watts_per_gb=config.ram_watts_per_gb,
        nvml=nvml,
        environ=env,
        clock=clock,
        powercap_read_file=powercap_read_file or read_sysfs,
    )
    if placement.is_local_main:
        return meters, warnings
    return _drop_node_level(meters), warnings


def _drop_node_level(meters: list[Meter]) -> list[Meter]:
    kept = []
    for meter in meters:
        if meter.name in NODE_LEVEL_METERS:
            logger.info(
                "%s reads the whole node; the node's local main process reads it", meter.name
            )
            meter.close()
            continue
        kept.append(meter)
    return kept


# -- totals across processes ------------------------------------------------------------------


class RankReducer:
    """Sums this process's figures with every other process's, on the job's process group.

    Every call is a collective: all processes must call it at the same point, which the
    integrations guarantee by calling it only at log steps every rank reaches and at train end.
    Without an initialised process group (one process) nothing is communicated.
    """

    def __init__(self) -> None:
        self._warned = False

    @property
    def active(self) -> bool:
        dist = _initialised_dist()
        return dist is not None and int(dist.get_world_size()) > 1

    def totals(self, snapshot: TrackerSnapshot, samples: float) -> TrackerSnapshot:
        """The run's snapshot: energy, CO2, rates and ``samples`` summed over every process.

        ``samples`` is this process's share. Components and devices stay this process's own.
        A failing collective gives one warning and this process's figures.
        """
        values = [float(getattr(snapshot, name)) for name in _REDUCED_FIELDS] + [samples]
        summed = self._all_reduce(values)
        if summed is None:
            return replace(snapshot, samples=int(samples))
        fields: dict[str, Any] = dict(zip(_REDUCED_FIELDS, summed, strict=False))
        return replace(snapshot, samples=int(round(summed[-1])), **fields)

    def gather(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Every process's ``record`` (picklable), in rank order; just ours without a group."""
        dist = _initialised_dist()
        if dist is None or not self.active:
            return [record]
        gathered: list[Any] = [None] * int(dist.get_world_size())
        try:
            dist.all_gather_object(gathered, record)
        except RuntimeError as err:
            self._warn(err)
            return [record]
        return [g for g in gathered if isinstance(g, dict)]

    def broadcast(self, value: str) -> str:
        """Rank 0's ``value`` on every process (one collective)."""
        dist = _initialised_dist()
        if dist is None or not self.active:
            return value
        box: list[Any] = [value]
        try:
            dist.broadcast_object_list(box, src=0)
        except RuntimeError as err:
            self._warn(err)
            return value
        return str(box[0])

    def _all_reduce(self, values: list[float]) -> list[float] | None:
        dist = _initialised_dist()
        if dist is None or not self.active:
            return values
        import torch

        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device(dist))
        try:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        except RuntimeError as err:
            self._warn(err)
            return None
        return [float(v) for v in tensor.cpu().tolist()]

    def _warn(self, err: BaseException) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "hf-eco2ai: summing figures across processes failed (%s); figures are this "
                "process's only.",
                err,
            )


def _collective_device(dist: Any) -> Any:
    """CPU for gloo (and mixed backends, which route CPU tensors to gloo), the GPU for nccl."""
    import torch

    backend = str(dist.get_backend()).lower()
    if "gloo" in backend or "mpi" in backend or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


# -- the job's report ----------------------------------------------------------------------------


def finish_job(tracker: CarbonTracker, reducer: RankReducer, samples: int) -> Any:
    """After ``tracker.stop(write=False)`` on every process: gather, merge and write on rank 0.

    A collective: every process calls it once at the end. Rank 0 gets (and writes) the job's
    report; the others keep their own. ``samples`` is this process's share of the samples.
    """
    from hf_eco2ai.reports.report import CarbonReport

    local = tracker.report
    records = reducer.gather(process_record(local.data, tracker.placement, samples))
    if not tracker.placement.is_main:
        return local
    merged = CarbonReport(merge_reports(local.data, records))
    tracker.replace_report(merged)
    return merged


def process_record(
    report_data: dict[str, Any], placement: Placement, samples: int
) -> dict[str, Any]:
    """What one process sends rank 0 at the end: its report without the per-step series.

    ``samples`` is this process's own share of the training samples.
    """
    record = {k: v for k, v in report_data.items() if k not in ("series", "epochs")}
    record["placement"] = placement.as_dict()
    record["process_samples"] = samples
    return record


def merge_reports(main: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The job's report document: ``main``'s (rank 0's) with energy and CO2 of every process.

    Totals are the sum over processes; a GPU that two processes of one host both measured (same
    UUID) is counted once and named in a warning. Each process's CO2 was computed with its own
    node's grid intensity, so grams add up across nodes in different regions.
    """
    from hf_eco2ai.reports.report import equivalents

    data = copy.deepcopy(main)
    ordered = sorted(records, key=lambda r: r["placement"]["rank"])
    devices, duplicates = _job_devices(ordered)
    energy, emissions = data["energy"], data["emissions"]
    totals = _summed_totals(ordered, duplicates)
    energy.update(_energy_totals(totals))
    energy["components"] = _job_components(ordered, duplicates)
    energy["sources"] = sorted({c["source"] for c in energy["components"].values()})
    energy["devices"] = devices
    energy["nodes"] = _nodes(ordered, duplicates)
    emissions.update(_emission_totals(totals, emissions))
    data["training"]["samples"] = sum(int(r.get("process_samples", 0)) for r in ordered)
    data["training"]["samples_per_kwh"] = _per_kwh(data["training"]["samples"], totals[0])
    data["equivalents"] = equivalents(totals[3])
    data["warnings"] = _job_warnings(ordered, duplicates)
    data["estimates"] = _unique([e for r in ordered for e in r.get("estimates", [])])
    data["distributed"] = _distributed_section(ordered, duplicates)
    return data


def _device_key(record: dict[str, Any], device: dict[str, Any]) -> tuple[str, str]:
    labels = device.get("labels", {})
    ident = labels.get("uuid") or device["device"]
    return record["placement"]["host"], ident if device["component"] == "gpu" else device["device"]


def _job_devices(
    records: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    """Every measured device with who measured it; duplicates (rank, device) are left out."""
    seen: dict[tuple[str, str], int] = {}
    devices: list[dict[str, Any]] = []
    duplicates: list[tuple[int, dict[str, Any]]] = []
    for record in records:
        place = record["placement"]
        for device in record["energy"]["devices"]:
            key = _device_key(record, device)
            if device["component"] == "gpu" and key in seen:
                duplicates.append((place["rank"], device))
                continue
            seen[key] = place["rank"]
            devices.append(
                {
                    **device,
                    "host": place["host"],
                    "node_rank": place["node_rank"],
                    "measured_by_rank": place["rank"],
                }
            )
    return devices, duplicates


def _summed_totals(
    records: Sequence[dict[str, Any]], duplicates: Sequence[tuple[int, dict[str, Any]]]
) -> list[float]:
    """[J, J low, J high, g, g low, g high] over processes, minus GPUs counted twice."""
    totals = [0.0] * 6
    for record in records:
        totals = [a + b for a, b in zip(totals, _record_totals(record), strict=True)]
    for _, device in duplicates:
        # GPUs are measured or sampled, never estimated: their range is the figure itself.
        grams = device["co2_kg"] * GRAMS_PER_KG
        totals = [t - d for t, d in zip(totals, [device["joules"]] * 3 + [grams] * 3, strict=True)]
    return [max(t, 0.0) for t in totals]


def _record_totals(record: dict[str, Any]) -> list[float]:
    energy, emissions = record["energy"], record["emissions"]
    return [
        energy["total_joules"],
        energy["low_kwh"] * JOULES_PER_KWH,
        energy["high_kwh"] * JOULES_PER_KWH,
        emissions["total_grams"],
        emissions["low_kg"] * GRAMS_PER_KG,
        emissions["high_kg"] * GRAMS_PER_KG,
    ]


def _energy_totals(totals: list[float]) -> dict[str, float]:
    return {
        "total_joules": totals[0],
        "total_kwh": totals[0] / JOULES_PER_KWH,
        "low_kwh": totals[1] / JOULES_PER_KWH,
        "high_kwh": totals[2] / JOULES_PER_KWH,
    }


def _emission_totals(totals: list[float], emissions: dict[str, Any]) -> dict[str, Any]:
    kwh = totals[0] / JOULES_PER_KWH
    return {
        "total_kg": totals[3] / GRAMS_PER_KG,
        "total_grams": totals[3],
        "low_kg": totals[4] / GRAMS_PER_KG,
        "high_kg": totals[5] / GRAMS_PER_KG,
        # The job's mean: nodes in different regions weigh in by their energy.
        "intensity_g_per_kwh": totals[3] / kwh if kwh > 0 else emissions["intensity_g_per_kwh"],
    }


def _job_components(
    records: Sequence[dict[str, Any]], duplicates: Sequence[tuple[int, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    certainty = {"measured": 0, "sampled": 1, "estimated": 2}
    merged: dict[str, dict[str, Any]] = {}
    parts = [c for r in records for c in r["energy"]["components"].items()]
    parts += [(d["component"], _negated(d)) for _, d in duplicates]
    for name, comp in parts:
        into = merged.setdefault(
            name,
            {
                "source": comp["source"],
                "joules": 0.0,
                "kwh": 0.0,
                "low_kwh": 0.0,
                "high_kwh": 0.0,
                "co2_kg": 0.0,
            },
        )
        if certainty[comp["source"]] > certainty[into["source"]]:
            into["source"] = comp["source"]
        for key in ("joules", "kwh", "low_kwh", "high_kwh", "co2_kg"):
            into[key] += comp[key]
    return dict(sorted(merged.items()))


def _negated(device: dict[str, Any]) -> dict[str, Any]:
    kwh = -device["kwh"]
    return {
        "source": device["source"],
        "joules": -device["joules"],
        "kwh": kwh,
        "low_kwh": kwh,
        "high_kwh": kwh,
        "co2_kg": -device["co2_kg"],
    }


def _nodes(
    records: Sequence[dict[str, Any]], duplicates: Sequence[tuple[int, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Per node: energy, CO2 and the grid intensity its processes used."""
    nodes: dict[int, dict[str, Any]] = {}
    for record in records:
        place = record["placement"]
        node = nodes.setdefault(
            place["node_rank"],
            {
                "node_rank": place["node_rank"],
                "host": place["host"],
                "ranks": [],
                "joules": 0.0,
                "co2_grams": 0.0,
                "intensity_periods": [],
            },
        )
        node["ranks"].append(place["rank"])
        node["joules"] += record["energy"]["total_joules"]
        node["co2_grams"] += record["emissions"]["total_grams"]
        if place["local_rank"] == 0 or not node["intensity_periods"]:
            node["intensity_periods"] = record["emissions"]["intensity_periods"]
    dup_ranks = {rank: d for rank, d in duplicates}
    for rank, device in dup_ranks.items():
        owner = next(r for r in records if r["placement"]["rank"] == rank)
        node = nodes[owner["placement"]["node_rank"]]
        node["joules"] -= device["joules"]
        node["co2_grams"] -= device["co2_kg"] * GRAMS_PER_KG
    return [_node_summary(n) for _, n in sorted(nodes.items())]


def _node_summary(node: dict[str, Any]) -> dict[str, Any]:
    kwh = node["joules"] / JOULES_PER_KWH
    periods = node.pop("intensity_periods")
    latest = periods[-1] if periods else {}
    return {
        **node,
        "kwh": kwh,
        "co2_kg": node["co2_grams"] / GRAMS_PER_KG,
        "intensity_g_per_kwh": node["co2_grams"] / kwh if kwh > 0 else latest.get("g_per_kwh", 0.0),
        "intensity_zone": latest.get("zone", ""),
        "intensity_source": latest.get("source", ""),
    }


def _job_warnings(
    records: Sequence[dict[str, Any]], duplicates: Sequence[tuple[int, dict[str, Any]]]
) -> list[str]:
    warnings: list[str] = []
    for record in records:
        rank = record["placement"]["rank"]
        prefix = "" if rank == 0 else f"rank {rank}: "
        warnings.extend(prefix + w for w in record.get("warnings", []))
    for rank, device in duplicates:
        uuid = device.get("labels", {}).get("uuid", device["device"])
        warnings.append(
            f"GPU {uuid} was measured by more than one process; rank {rank}'s figure "
            f"({device['joules']:.1f} J) is left out so it is counted once."
        )
    return _unique(warnings)


def _distributed_section(
    records: Sequence[dict[str, Any]], duplicates: Sequence[tuple[int, dict[str, Any]]]
) -> dict[str, Any]:
    processes = []
    for record in records:
        place = record["placement"]
        processes.append(
            {
                **place,
                "measured": [d["device"] for d in record["energy"]["devices"]],
                "meters": record.get("meters", []),
                "node_level": place["local_rank"] == 0,
                "joules": record["energy"]["total_joules"],
            }
        )
    world = records[0]["placement"]["world_size"] if records else 1
    return {
        "scope": "job",
        "world_size": world,
        "processes_reporting": len(records),
        "nodes": len({r["placement"]["node_rank"] for r in records}),
        "processes": processes,
        "gpus_counted_twice": len(duplicates),
    }


def _per_kwh(samples: float, joules: float) -> float:
    kwh = joules / JOULES_PER_KWH
    return samples / kwh if kwh > 0 else 0.0


def _unique(items: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out
