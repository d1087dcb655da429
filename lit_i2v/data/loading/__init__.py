"""From records to batches: the clip dataset (per-clip seeds, failure policy), samplers that resume and count each
video once, the epoch-aware loader, and the shared-memory hand-over of batches from workers."""
