//! The site agent (being written).
