"""The step cache: content-addressed objects, structural digests of values and code, the stat
cache of file hashes, and the index from a step's key to its stored outcome."""
