"""What a sweep cost: per-clip cost rows (`rows`) and the paid-versus-marginal summary (`summary`)."""
