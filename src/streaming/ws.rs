//! WebSocket channel sessions for the streaming server (see mod.rs).
