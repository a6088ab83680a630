/// Emulation's public API (trace generation) speaks `DeterministicRNG`; re-exported so a user of
/// Emulation needs no second import.
@_exported import DeterministicRandom
