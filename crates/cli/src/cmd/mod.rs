//! One module per command, in the order an operator meets them: onboard a partner (and check
//! its egress path), send a file, replay a prefix after an outage, redrive the dead-letter queue.

pub mod check;
pub mod partners;
pub mod redrive;
pub mod replay;
pub mod send;
pub mod test_connection;
