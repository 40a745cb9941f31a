//! One module per command, in the order an operator meets them: onboard a partner, send a file,
//! replay a prefix after an outage, redrive the dead-letter queue.

pub mod redrive;
pub mod replay;
pub mod send;
pub mod test_connection;
