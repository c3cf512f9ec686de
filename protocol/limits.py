"""Size limits for everything a neuron accepts from the network."""
MAX_TRAIN_REQUEST_BYTES = 64 * 1024
# A compressed contribution of a ~1B model at the default density is ~40 MB; leave headroom.
MAX_CONTRIBUTION_BYTES = 256 * 1024 * 1024
MAX_CHECKPOINT_BYTES = 8 * 1024 * 1024 * 1024
MAX_INFO_BYTES = 16 * 1024
# A round record names every miner's pages: 256 miners x 1024 page ids is ~2.5 MB of JSON.
MAX_ROUND_RECORD_BYTES = 32 * 1024 * 1024
