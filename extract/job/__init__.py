"""The extraction job: manifest in, feature store out, resumable, sharded and fault-tolerant."""
