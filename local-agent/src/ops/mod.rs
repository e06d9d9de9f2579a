//! Running the agent day to day: installing its runtime ([`setup`]), its first configuration
//! ([`init`]), as a service ([`service`]),
//! checking everything it depends on ([`doctor`]), its log ([`logs`]), describing the data dir
//! ([`status`]), and one server per data dir ([`running`]).

pub mod doctor;
pub mod init;
pub mod logs;
pub mod running;
pub mod service;
pub mod setup;
pub mod status;
