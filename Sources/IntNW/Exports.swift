/// IntNW's public API speaks the wire module's types (IROBID, Labels, NetworkKind, SessionID,
/// frames); re-exported so an application needs only `import IntNW`.
@_exported import IntNWWire
@_exported import struct LinuxSupport.IPv4Endpoint
