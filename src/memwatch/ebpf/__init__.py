"""The only package that touches ctypes and libbpf: load, attach and read the eBPF tracer."""

from memwatch.ebpf.errors import BpfUnavailable
from memwatch.ebpf.layouts import RawCall, RawEvent, RawExit, RawOom, RawStack, RawStats, parse_stack_record
from memwatch.ebpf.loader import StackTargetCounts, Tracer, TracerConfig, TracerCounters
from memwatch.ebpf.ringbuf import parse_records

__all__ = [
    "BpfUnavailable",
    "RawCall",
    "RawEvent",
    "RawExit",
    "RawOom",
    "RawStack",
    "RawStats",
    "StackTargetCounts",
    "Tracer",
    "TracerConfig",
    "TracerCounters",
    "parse_records",
    "parse_stack_record",
]
