//! berth's end-to-end test bed: a real berthd, a real registry, images built by our own code.

pub mod netns;
pub mod node;
