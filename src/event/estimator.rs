//! Gradient estimators of the expected observable built on the event-time run.
