"""The transparency log: RFC 9162 Merkle trees, tiles, signing keys, C2SP signed notes and
checkpoints, cosignatures, witnesses, witness policies and consistency evidence.
"""
