//! 07 speed camera (UDP) across hosts.

use super::*;

/// The camera over UDP between hosts: a photo from one host and one from
/// another (over IPv6 when the server is on [::], IPv4-mapped over IPv4)
/// arrive intact through a client dropping 20 % of what it sends; a host
/// outside the default allowlist, and a wrong secret, get no reply at all,
/// so their client gives up and exits 1.
#[test]
fn camera_across_hosts() {
    let test = "camera_across_hosts";
    let Some(lab) = lab(test) else {
        return;
    };
    let dir = common::temp_dir(test);
    let users = dir.join("cameras.txt");
    std::fs::write(&users, format!("gate:{CAMERA_SECRET}\n")).unwrap();
    let photo_bytes = common::Rng::new(21).bytes(150_000);
    let photo = dir.join("photo.jpg");
    std::fs::write(&photo, &photo_bytes).unwrap();
    let photo = photo.display().to_string();
    let users = users.display().to_string();
    let reference = common::override_command(CAMERA_CLIENT).is_none();
    // Short give-up timers for the runs that must fail (reference only:
    // a learner's client takes its own, and the lab allows 15 s a run).
    let quick: &[&str] = if reference {
        &["--retry-base-ms", "50", "--retry-max-ms", "200"]
    } else {
        &[]
    };

    for (n, any) in ["0.0.0.0:0", "[::]:0"].into_iter().enumerate() {
        let store = dir.join(format!("store-{n}"));
        let store_arg = store.display().to_string();
        let args = ["--addr", any, "--store", &store_arg, "--users", &users];
        let server = lab.start_server(SERVER_HOST, CAMERA, &args, 1);
        let port = server.addr().port();
        let ipv6 = server.addr().is_ipv6();

        // The second host over IPv6 when the server is on [::].
        let second = if ipv6 {
            IpAddr::V6(INSIDE2.server_v6)
        } else {
            IpAddr::V4(INSIDE2.server_v4)
        };
        let hosts = [
            (
                INSIDE.name,
                SocketAddr::new(IpAddr::V4(INSIDE.server_v4), port),
            ),
            (INSIDE2.name, SocketAddr::new(second, port)),
        ];
        for (host, to) in &hosts {
            let ran = camera_client(&lab, host, *to, CAMERA_SECRET, &photo, &["--drop", "20"]);
            ran.expect_success(&format!("the camera on {host} sending to {to}"));
            let stored = store.join("gate").join(format!("{}.jpg", report_id(&ran)));
            assert!(
                std::fs::read(&stored).unwrap() == photo_bytes,
                "the photo from {host} arrived damaged"
            );
        }

        // The failing runs need the reference client's short timers (a
        // learner's client would take its full 20 s to give up).
        if !reference {
            common::say(
                "camera_across_hosts: the refusals were not checked (they need the reference client's timers)",
            );
            continue;
        }
        if reference_only(CAMERA, "the camera server's default allowlist") {
            let to = SocketAddr::new(IpAddr::V4(OUTSIDE.server_v4), port);
            let ran = camera_client(&lab, OUTSIDE.name, to, CAMERA_SECRET, &photo, quick);
            assert!(
                !ran.success(),
                "a host outside the allowlist got its photo in"
            );
            assert!(ran.stderr.contains("no answer"), "stderr:\n{}", ran.stderr);
            // All 8 of its HELLOs were counted, and none answered.
            server.expect_stderr("8 not allowed", Duration::from_secs(10));
        }
        let (host, to) = hosts[0];
        let ran = camera_client(&lab, host, to, "not-the-secret", &photo, quick);
        assert!(!ran.success(), "a wrong secret got its photo in");
        assert!(ran.stderr.contains("no answer"), "stderr:\n{}", ran.stderr);
    }
}

const CAMERA: &str = "07_camera_server";

const CAMERA_CLIENT: &str = "07_camera_client";

const CAMERA_SECRET: &str = "camera-across-the-lab";

/// Runs `07_camera_client` on `host` sending `photo` to `addr` as camera
/// `gate` with `secret`, plus `extra` flags.
fn camera_client(
    lab: &Lab,
    host: &str,
    addr: SocketAddr,
    secret: &str,
    photo: &str,
    extra: &[&str],
) -> netns::Ran {
    let mut client = common::command(CAMERA_CLIENT);
    client
        .args(["--addr", &addr.to_string(), "--camera", "gate"])
        .args(["--plate", "LAB 9", "--speed", "70"])
        .args(extra)
        .arg(photo)
        .env("NETLESSONS_SECRET", secret);
    lab.run(host, &client, b"")
}

/// The report id (16 hex digits) a camera client printed.
fn report_id(ran: &netns::Ran) -> String {
    ran.stdout
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 16)
        .unwrap_or_else(|| panic!("no report id in {:?}", ran.stdout))
        .to_string()
}
