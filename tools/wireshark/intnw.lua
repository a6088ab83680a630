-- Wireshark / tshark dissector for the IntNW wire protocol, version 2 (docs/wire-protocol.md; version 1 captures,
-- which have no AUTH frames, dissect too).
--
--   wireshark -X lua_script:tools/wireshark/intnw.lua capture.pcap
--   tshark -X lua_script:tools/wireshark/intnw.lua -r capture.pcap -Y intnw
--
-- IntNW connections are found heuristically (a stream that starts with a HELLO frame: length,
-- type 0x01, magic "INW!"), so any port works. Frames spanning TCP segments are reassembled.
-- Each DATA frame shows its IROB id, offset and payload length, and the app id of the toy message
-- the IROB carries (learned from its toy header, whole or in several DATA frames, per session and
-- direction; 0 on the frames before the header is complete).
-- Bytes cut off by a capture's snap length cannot be reassembled: those frames are not shown.

local intnw = Proto("intnw", "Intentional Networking")

local frame_types = {
  [0x01] = "HELLO", [0x02] = "BEGIN_IROB", [0x03] = "DATA", [0x04] = "END_IROB", [0x05] = "ACK",
  [0x06] = "RESEND_REQUEST", [0x07] = "DATA_CHECK", [0x08] = "NEW_INTERFACE", [0x09] = "DOWN_INTERFACE",
  [0x0A] = "GOODBYE", [0x0B] = "PING", [0x0C] = "PONG", [0x0D] = "AUTH", [0xA0] = "NETWORK_TROUBLE",
}
local auth_kinds = { [0] = "KEY_SHARE", [1] = "JOIN", [2] = "CHALLENGE", [3] = "PROOF", [4] = "UNKNOWN_SESSION" }
local toy_kinds = { [1] = "fgRequest", [2] = "fgReply", [3] = "bgChunk", [4] = "bgAck" }

local f = {
  length = ProtoField.uint32("intnw.length", "Length", base.DEC),
  type = ProtoField.uint8("intnw.type", "Type", base.HEX, frame_types),
  type_name = ProtoField.string("intnw.type_name", "Type name"),
  version = ProtoField.uint16("intnw.hello.version", "Version", base.DEC),
  role = ProtoField.uint8("intnw.hello.role", "Role", base.DEC, { [0] = "client", [1] = "server" }),
  session = ProtoField.bytes("intnw.hello.session", "Session id"),
  network_id = ProtoField.uint32("intnw.network_id", "Network id", base.DEC),
  irob = ProtoField.uint64("intnw.irob", "IROB id", base.DEC),
  labels = ProtoField.uint32("intnw.begin.labels", "Labels", base.HEX),
  background = ProtoField.bool("intnw.begin.background", "Background"),
  total = ProtoField.uint32("intnw.total_length", "IROB length", base.DEC),
  offset = ProtoField.uint32("intnw.data.offset", "Offset", base.DEC),
  payload_len = ProtoField.uint32("intnw.data.length", "Payload length", base.DEC),
  data_irob = ProtoField.uint64("intnw.data.irob", "IROB id of this DATA", base.DEC),
  app = ProtoField.uint32("intnw.app", "App id (toy header)", base.DEC),
  auth_kind = ProtoField.uint8("intnw.auth.kind", "AUTH kind", base.DEC, auth_kinds),
  toy_kind = ProtoField.uint8("intnw.toy.kind", "Toy message kind", base.DEC, toy_kinds),
  toy_seq = ProtoField.uint64("intnw.toy.seq", "Toy sequence", base.DEC),
}
intnw.fields = f

-- Per TCP stream and sender port: the session and role its HELLO named.
local stream_session = {}
-- Per session, role and IROB id: the app id of its toy header.
local irob_app = {}
-- Per session, role and IROB id: the toy header's first 12 bytes seen so far (index 0-11), for
-- an IROB whose first DATA frames are shorter than the header (a sender limited to a few bytes).
local irob_head = {}

local function session_key(pinfo, stream)
  return stream_session[tostring(stream) .. ":" .. tostring(pinfo.src_port)]
end

local tcp_stream_f = Field.new("tcp.stream")

local function frame_len(tvb, pinfo, offset)
  return 4 + tvb(offset, 4):uint()
end

local function dissect_frame(tvb, pinfo, tree)
  local length = tvb(0, 4):uint()
  local t = tvb(4, 1):uint()
  local name = frame_types[t] or (t >= 0x80 and string.format("EXT_0x%02X", t) or string.format("UNKNOWN_0x%02X", t))
  local sub = tree:add(intnw, tvb(), "IntNW " .. name)
  sub:add(f.length, tvb(0, 4))
  sub:add(f.type, tvb(4, 1))
  sub:add(f.type_name, name)
  local stream = tcp_stream_f()
  local stream_id = stream and stream.value or 0
  if t == 0x01 and length >= 1 + 4 + 2 + 1 + 1 + 16 then
    sub:add(f.version, tvb(9, 2))
    sub:add(f.role, tvb(11, 1))
    sub:add(f.session, tvb(13, 16))
    sub:add(f.network_id, tvb(29, 4))
    stream_session[tostring(stream_id) .. ":" .. tostring(pinfo.src_port)] =
      tostring(tvb(13, 16):bytes()) .. "/" .. tostring(tvb(11, 1):uint())
  elseif t == 0x02 and length >= 17 then
    sub:add(f.irob, tvb(5, 8))
    local labels = tvb(13, 4):uint()
    sub:add(f.labels, tvb(13, 4))
    sub:add(f.background, bit32.band(labels, 1) == 0 and bit32.band(labels, 2) ~= 0)
    sub:add(f.total, tvb(17, 4))
  elseif t == 0x03 and length >= 13 then
    local id = tvb(5, 8):uint64()
    local off = tvb(13, 4):uint()
    local plen = length - 13
    sub:add(f.irob, tvb(5, 8))
    sub:add(f.offset, tvb(13, 4))
    sub:add(f.payload_len, plen)
    sub:add(f.data_irob, id)
    local key = session_key(pinfo, stream_id)
    local irob_key = (key or ("stream" .. tostring(stream_id) .. ":" .. tostring(pinfo.src_port))) .. "#" .. tostring(id)
    if off == 0 and plen >= 24 and tvb(17, 4):uint() == 0x544F5931 then
      irob_app[irob_key] = tvb(25, 4):uint()
      sub:add(f.toy_kind, tvb(22, 1))
      sub:add(f.toy_seq, tvb(29, 8))
    elseif off < 12 and irob_app[irob_key] == nil then
      -- The header arrives in pieces: collect its magic and app id by offset.
      local head = irob_head[irob_key] or {}
      for j = 0, math.min(plen, 12 - off) - 1 do head[off + j] = tvb(17 + j, 1):uint() end
      irob_head[irob_key] = head
      local whole = true
      for j = 0, 11 do if head[j] == nil then whole = false end end
      if whole and head[0] == 0x54 and head[1] == 0x4F and head[2] == 0x59 and head[3] == 0x31 then
        irob_app[irob_key] = ((head[8] * 256 + head[9]) * 256 + head[10]) * 256 + head[11]
        irob_head[irob_key] = nil
      end
    end
    -- 0 when the IROB's toy header was not seen yet (so the DATA fields stay aligned).
    sub:add(f.app, irob_app[irob_key] or 0)
  elseif t == 0x04 and length >= 13 then
    sub:add(f.irob, tvb(5, 8))
    sub:add(f.total, tvb(13, 4))
  elseif t == 0x0D and length >= 2 then
    sub:add(f.auth_kind, tvb(5, 1))
  end
  pinfo.cols.protocol = "IntNW"
  return tvb:len()
end

function intnw.dissector(tvb, pinfo, tree)
  dissect_tcp_pdus(tvb, tree, 5, frame_len, dissect_frame, true)
  return tvb:len()
end

-- A stream is IntNW when it starts with a HELLO frame.
local function heuristic(tvb, pinfo, tree)
  if tvb:len() < 9 then return false end
  local length = tvb(0, 4):uint()
  if length < 9 or length > 1024 or tvb(4, 1):uint() ~= 0x01 or tvb(5, 4):uint() ~= 0x494E5721 then return false end
  pinfo.conversation = intnw
  intnw.dissector(tvb, pinfo, tree)
  return true
end
intnw:register_heuristic("tcp", heuristic)
