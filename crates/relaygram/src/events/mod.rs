//! Events to tenant apps: signed webhooks (Standard Webhooks) and a pull API.
