//! The local terminal: raw mode for `-t` sessions (restored on drop) and its window size.

use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};

/// Whether standard input is a terminal.
pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(std::io::stdin()).unwrap_or(false)
}

/// Standard input's terminal in raw mode until this is dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> anyhow::Result<RawMode> {
        let saved = termios::tcgetattr(std::io::stdin())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// The terminal's size as (columns, rows), if stdout or stdin is one.
pub fn window_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    let inp = std::io::stdin();
    [out.as_fd(), inp.as_fd()]
        .into_iter()
        .find_map(|fd| berth_sys::console::window_size(fd).ok())
        .filter(|&(w, h)| w > 0 && h > 0)
}
