"""Size limits for everything a neuron accepts from the network."""
MAX_TRAIN_REQUEST_BYTES = 64 * 1024
# A compressed contribution of a ~1B model at the default density is ~40 MB; leave headroom.
MAX_CONTRIBUTION_BYTES = 256 * 1024 * 1024
MAX_CHECKPOINT_BYTES = 8 * 1024 * 1024 * 1024
MAX_INFO_BYTES = 16 * 1024
MAX_COMMITMENT_BYTES = 1024
# A round record names every miner's pages: 256 miners x 1024 page ids is ~2.5 MB of JSON.
MAX_ROUND_RECORD_BYTES = 32 * 1024 * 1024
# Round indices and block heights on the wire: what a signed 64-bit integer holds (the round
# seed packs the index into 8 bytes).
MAX_ROUND_OR_BLOCK = 2**63 - 1

# A tensor payload's safetensors header is JSON that is parsed before any tensor, so it is
# bounded first. A contribution has 3 tensors per model parameter (the 1b preset: 201
# parameters, ~600 tensors, a ~80 KB header).
MAX_PAYLOAD_TENSORS = 2048
MAX_TENSOR_NAME_CHARS = 256
MAX_PAYLOAD_METADATA_BYTES = 16 * 1024
# One header entry is ~130 bytes; 512 per tensor leaves room for long names. The metadata is
# JSON inside a JSON string there, and escaping can double it.
MAX_PAYLOAD_HEADER_BYTES = MAX_PAYLOAD_TENSORS * 512 + 2 * MAX_PAYLOAD_METADATA_BYTES
