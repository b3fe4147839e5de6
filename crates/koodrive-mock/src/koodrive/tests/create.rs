//! Creating a task and reading it back through every task endpoint.

use http::{Method, StatusCode};
use time::OffsetDateTime;

use serde_json::Value;

use super::{assert_error, start, x_date, LIST, USER};
use crate::koodrive::reply::codes;

#[tokio::test]
async fn created_task_is_listed_first_as_new() {
    let h = start().await;
    let date = x_date(OffsetDateTime::now_utc());
    let body = r#"{"taskName":"t1","taskType":0}"#;
    let create = h.signed(
        Method::POST,
        "/koodrive/ose/v1/task/create",
        body,
        "secret-1",
        &date,
    );
    let (status, created) = h.send(create).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["code"], 0);
    let id = created["taskId"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 19);

    let (_, page) = h.send(h.get(&format!("{LIST}?pageSize=5"))).await;
    let first = &page["taskListDtos"][0];
    assert_eq!(
        (first["taskId"].as_str(), &first["status"]),
        (Some(id.as_str()), &Value::from(0))
    );
    assert_eq!(first["taskName"], "t1");
    assert_eq!(first["userId"], USER);

    let (_, one) = h.send(h.get(&format!("/koodrive/ose/v1/task/{id}"))).await;
    assert_eq!(one["taskDto"]["taskId"], id.as_str());
    let (_, result) = h
        .send(h.get(&format!("/koodrive/ose/v1/task/result?taskId={id}")))
        .await;
    assert_eq!(
        (&result["code"], &result["taskResult"]["status"]),
        (&Value::from(0), &Value::from(0))
    );
    let missing = h
        .send(h.get("/koodrive/ose/v1/task/1000000000000000000"))
        .await;
    assert_error(&missing, StatusCode::BAD_REQUEST, codes::TASK_NOT_FOUND);
    let (_, bad) = h
        .send(h.signed(
            Method::POST,
            "/koodrive/ose/v1/task/create",
            "{",
            "secret-1",
            &date,
        ))
        .await;
    assert_eq!(bad["code"], codes::BAD_BODY);
}
