"""Cleaning: rules generated from the data contract, applied by pandas or by Spark alike, the summaries
of what they did, and the clean job."""
