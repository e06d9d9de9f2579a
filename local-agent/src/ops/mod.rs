//! Running the agent day to day: as a service ([`service`]) and checking everything it
//! depends on ([`doctor`]).

pub mod doctor;
pub mod service;
