"""The audit trail (审计日志): a hash chain of every change of state, with checkpoints of the events."""
