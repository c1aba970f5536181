//! The route table: every route portd serves, one file per area of the API, put
//! together in one list ([`ENDPOINTS`]) from which both the router and the OpenAPI
//! document are built. The query parameters and error statuses several areas share are
//! here.

use crate::routes::endpoint::{Endpoint, ParamKind, QueryParam, param};

mod actions;
mod catalog;
mod operations;
mod organization;
mod people;
mod runs;

const VERSIONS: &[&str] = &["v1", "v2"];

const VERSION_V2: QueryParam = param(
    "version",
    ParamKind::String,
    "Response shape: v2 (default) or v1.",
)
.one_of(VERSIONS);

const TAKEN_409: (u16, &str) = (
    409,
    "identifier_taken: an object with this identifier already exists",
);

/// The areas, in the order the table lists them.
const AREAS: &[&[Endpoint]] = &[
    operations::OPERATIONS,
    catalog::CATALOG,
    actions::ACTIONS,
    runs::RUNS,
    people::PEOPLE,
    organization::ORGANIZATION,
];

const fn count(areas: &[&[Endpoint]]) -> usize {
    let (mut total, mut i) = (0, 0);
    while i < areas.len() {
        total += areas[i].len();
        i += 1;
    }
    total
}

/// The areas' endpoints one after the other, at compile time.
const fn concat<const N: usize>(areas: &[&[Endpoint]]) -> [Endpoint; N] {
    let mut all = [areas[0][0]; N];
    let (mut area, mut n) = (0, 0);
    while area < areas.len() {
        let mut i = 0;
        while i < areas[area].len() {
            all[n] = areas[area][i];
            n += 1;
            i += 1;
        }
        area += 1;
    }
    assert!(n == N, "every endpoint is in the table once");
    all
}

/// Every route portd serves.
pub const ENDPOINTS: &[Endpoint] = &concat::<{ count(AREAS) }>(AREAS);
