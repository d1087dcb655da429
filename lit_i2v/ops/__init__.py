"""Sequence operators that strategies share: plain PyTorch, with a fused kernel where an optional extra provides one."""

from lit_i2v.ops.selective_scan import counting_scan_flops, selective_scan, selective_scan_sequential

__all__ = ["counting_scan_flops", "selective_scan", "selective_scan_sequential"]
