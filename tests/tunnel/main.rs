//! The tunnel on loopback: the real agent client against the real cloud hub (`cloud-fn`'s
//! `/agent` route) and against the API Gateway handlers behind the test kit's emulator, then
//! the whole chain with the Notion sandbox and the LLM stand-in.

mod support;

mod api_gateway;
mod end_to_end;
mod health;
mod link;
