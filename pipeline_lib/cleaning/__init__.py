"""Cleaning: rules generated from the data contract, applied by pandas or by Spark alike."""
