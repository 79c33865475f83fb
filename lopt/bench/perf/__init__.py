"""``lopt bench perf``: what learned updates and meta-training cost."""
