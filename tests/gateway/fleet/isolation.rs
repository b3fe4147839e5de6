//! Identity isolation in the shared tier: a randomized load of several identities over three
//! sidecars never gets a page made for another identity.

use crate::cache::versioned_mock;
use crate::fleet::fleet_of;
use crate::support::redis::RedisServer;
use crate::support::{within, TASK_LIST};

#[tokio::test]
async fn a_randomized_multi_identity_load_over_three_sidecars_gets_no_foreign_page() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(3, &mock, &redis, "").await;
    let users = ["u1", "u2", "u3", "u4"];
    let languages = ["en-US", "de-DE"];
    let mut rng = fastrand::Rng::with_seed(20);
    let mut foreign = 0;
    within("the load", async {
        for _ in 0..300 {
            let gw = &fleet[rng.usize(..fleet.len())];
            let user = users[rng.usize(..users.len())];
            let language = languages[rng.usize(..languages.len())];
            let path = format!("{TASK_LIST}?pageSize={}", rng.u8(1..3));
            let headers = [("x-user-id", user), ("language", language)];
            let page = gw.client.get_with(&path, &headers).await;
            assert_eq!(page.status, 200, "{}", page.text());
            let owner = page.json()["owner"].as_str().unwrap_or_default().to_owned();
            let (owner_user, owner_language) = (owner.split('|').next(), owner.rsplit('|').next());
            if owner_user != Some(user) || owner_language != Some(language) {
                foreign += 1;
            }
        }
    })
    .await;
    assert_eq!(foreign, 0, "pages made for another identity were served");
    assert!(mock.hits() < 300, "the shared tier served some of the load");
}
