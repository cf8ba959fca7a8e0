//! SPDY/3.1 server sessions for the streaming server (see mod.rs).
