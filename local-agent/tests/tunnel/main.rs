//! The tunnel on loopback: the real agent client against the real cloud hub (`cloud-fn`'s
//! `/agent` route), then the whole chain with the Notion sandbox and the LLM stand-in.

mod support;

mod end_to_end;
mod link;
