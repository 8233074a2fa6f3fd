//! HTTP handlers for linking (placeholder while the service is built).
