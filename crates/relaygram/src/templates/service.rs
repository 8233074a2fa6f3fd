//! The rules for stored templates.
