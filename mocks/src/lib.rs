//! Test doubles for kiwi-infra: a Contabo API stand-in that follows the official
//! OpenAPI spec ([`contabo`]), and an independent validator of traffic against
//! that spec ([`openapi`]).

pub mod contabo;
pub mod nodes;
pub mod openapi;
pub mod standin;
