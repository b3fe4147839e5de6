use super::*;

fn parse(toml: &str) -> Result<crate::config::Config, ConfigError> {
    let base = "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
                [auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret = \"s\"\n";
    crate::config::Config::parse(&format!("{base}{toml}"), [])
}

#[test]
fn the_polls_are_built_in_and_literals_match_before_patterns() {
    let config = parse("").map_err(|e| e.to_string());
    let routes = config.map(|c| c.cache.routes);
    let routes = routes.as_ref().map_err(String::as_str);
    let find = |path: &str| {
        routes
            .ok()
            .and_then(|r| r.find(path))
            .map(|r| r.path.as_str())
    };
    let cases = [
        ("/koodrive/ose/v1/task/result", Some(TASK_RESULT_PATH)),
        (
            "/koodrive/ose/v1/task/1486254586942472064",
            Some(TASK_POLL_PATH),
        ),
        ("/koodrive/ose/v1/task/create", None),
        ("/koodrive/ose/v1/task/list", None),
        ("/koodrive/ose/v1/task/1/extra", None),
        ("/koodrive/ose/v1/task/", None),
        ("/koodrive/ose/v1/task/a%2Fb", None),
        ("/koodrive/ose/v1/files/1", None),
    ];
    for (path, route) in cases {
        assert_eq!(find(path), route, "{path}");
    }
    let result = routes.ok().and_then(|r| r.find(TASK_RESULT_PATH));
    assert_eq!(
        result.map(|r| r.key_params.clone()),
        Some(vec!["taskId".to_owned()])
    );
    assert_eq!(result.map(|r| r.windows.ttl), Some(Duration::from_secs(1)));
}

#[test]
fn an_entry_replaces_a_builtin_or_adds_a_route() {
    let toml = r#"
        [[cache.routes]]
        path = "/koodrive/ose/v1/task/{id}"
        ttl = "2s"
        stale_if_error = "5s"
        [[cache.routes]]
        path = "/koodrive/ose/v1/task/{id}/files"
        ttl = "10s"
        key_params = ["pageSize", "cursor"]
    "#;
    let config = parse(toml).map_err(|e| e.to_string());
    let routes = config.map(|c| c.cache.routes).unwrap_or_default();
    let poll = routes.find("/koodrive/ose/v1/task/7");
    assert_eq!(
        poll.map(|r| r.windows),
        Some(Windows {
            ttl: Duration::from_secs(2),
            stale_while_revalidate: Duration::from_secs(2),
            stale_if_error: Duration::from_secs(5),
        })
    );
    let files = routes.find("/koodrive/ose/v1/task/7/files");
    assert_eq!(
        files.map(|r| r.key_params.clone()),
        Some(vec!["cursor".to_owned(), "pageSize".to_owned()])
    );
    assert_eq!(routes.iter().count(), 3);
}

#[test]
fn errors_name_the_entry_and_its_key() {
    let cases = [
        (
            "path = \"/koodrive/ose/v1/files/{id}\"\nttl = \"1s\"",
            "cache.routes[0].path",
        ),
        (
            "path = \"/koodrive/ose/v1/task/list\"\nttl = \"1s\"",
            "cache.routes[0].path",
        ),
        (
            "path = \"/koodrive/ose/v1/task/{}\"\nttl = \"1s\"",
            "cache.routes[0].path",
        ),
        (
            "path = \"/koodrive/ose/v1/task/{id}\"\nttl = \"-1s\"",
            "cache.routes[0].ttl",
        ),
        (
            "path = \"/koodrive/ose/v1/task/{id}\"\nttl = \"soon\"",
            "cache.routes[0].ttl",
        ),
        (
            "path = \"/koodrive/ose/v1/task/{id}\"\nttl = \"1s\"\nstale_if_error = \"400d\"",
            "cache.routes[0].stale_if_error",
        ),
        (
            "path = \"/koodrive/ose/v1/task/{id}\"\nttl = \"1s\"\nkey_params = [\"a b\"]",
            "cache.routes[0].key_params",
        ),
        (
            "path = \"/koodrive/ose/v1/task/{id}\"\nttle = \"1s\"",
            "cache.routes[0]",
        ),
    ];
    for (entry, key) in cases {
        let toml = format!("[[cache.routes]]\npath = \"/koodrive/ose/v1/task/x\"\nttl = \"1s\"\n[[cache.routes]]\n{entry}");
        let error = parse(&toml)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let key = key.replace("routes[0]", "routes[1]");
        assert!(error.starts_with(&key), "{entry}: {error}");
    }
    let twice = "[[cache.routes]]\npath = \"/koodrive/ose/v1/task/x\"\nttl = \"1s\"\n\
                 [[cache.routes]]\npath = \"/koodrive/ose/v1/task/x\"\nttl = \"2s\"";
    let error = parse(twice)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.starts_with("cache.routes[1].path"), "{error}");
}
