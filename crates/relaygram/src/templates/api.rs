//! HTTP handlers for `/v1/templates`.
