//! Running the agent day to day: as a service ([`service`]), checking everything it depends
//! on ([`doctor`]), and describing the data dir ([`status`]).

pub mod doctor;
pub mod service;
pub mod status;
