//! berth's end-to-end test bed: a real berthd, a real registry (Debian's docker-registry),
//! and test images our own code builds from Debian's busybox-static.

pub mod cri;
pub mod critest_images;
pub mod http;
pub mod images;
pub mod netns;
pub mod node;
pub mod peer;
pub mod pki;
pub mod registry;
pub mod rng;
pub mod slow_proxy;
pub mod spdy;
pub mod token;
pub mod ws;

#[cfg(test)]
mod image_tests;
