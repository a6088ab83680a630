/// The IntNW decoding the analyzer uses by default.
public enum IntNWWireDecoding {
    /// nil until IntNW's public `FrameDecoder` is available in this build: then an adapter over
    /// it (see `IntNWFrameParser`) is returned here, and IntNW streams are decoded.
    public static let standard: IntNWDecoding? = nil
}
