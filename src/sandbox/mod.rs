//! Local test hosts (placeholder: being written).
