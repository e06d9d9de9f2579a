#!/usr/bin/env bash
# Builds cloud-fn-lambda with SAM (rust-cargolambda, via cargo-lambda + zig) and deploys
# template.yaml, then prints what the local agent needs. Arguments go to `sam deploy` as they are:
#   scripts/deploy.sh --guided          # first time: asks for the parameters, saves samconfig.toml
#   scripts/deploy.sh                   # later: deploys with the saved answers
#   ARCHITECTURE=x86_64 scripts/deploy.sh --guided   # build for x86_64 (and answer x86_64)
# Needs AWS credentials in the environment or the AWS config (see infra/README.md). Before it
# builds, it checks the credentials, the SSM parameters the function reads, and the Notion
# questions database (with `cloud-fn notion check` when a cloud-fn binary is at hand);
# DEPLOY_SKIP_CHECKS=1 skips that.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runtime=${NOTION_LLM_RUNTIME:-$repo/.runtime}
venv=$runtime/venv
cd "$repo"

say() { printf 'deploy: %s\n' "$*"; }
die() { printf 'deploy: error: %s\n' "$*" >&2; exit 1; }

# scripts/setup.sh installs sam, cargo-lambda (with zig) and cfn-lint into this venv.
[ -d "$venv/bin" ] && export PATH="$venv/bin:$PATH"
command -v sam >/dev/null || die "sam not found; run scripts/setup.sh or install the AWS SAM CLI"
command -v cargo-lambda >/dev/null || die "cargo-lambda not found; run scripts/setup.sh or pip install cargo-lambda"
command -v cargo >/dev/null || die "cargo not found; install Rust (rustup)"
python=python3
[ -x "$venv/bin/python" ] && python=$venv/bin/python
export SAM_CLI_TELEMETRY=${SAM_CLI_TELEMETRY:-0}

# --- What the arguments and samconfig.toml say --------------------------------------------------
# samconfig.toml holds the user's answers and is not in git; it starts as the repository's example.
if [ ! -f "$repo/samconfig.toml" ]; then
  cp "$repo/samconfig.example.toml" "$repo/samconfig.toml"
  say "created samconfig.toml from samconfig.example.toml (your answers go there; git ignores it)"
fi
# sam build compiles for the Architecture parameter it is given, not for the one `sam deploy`
# later receives, so find the value the deploy will use and build for that.
config_env=default guided=0 arg_stack='' arg_region='' arg_profile='' arg_overrides=''
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  a=${args[i]} next=${args[i + 1]:-}
  case "$a" in
    --guided | -g) guided=1 ;;
    --config-env) config_env=$next ;;      --config-env=*) config_env=${a#*=} ;;
    --stack-name) arg_stack=$next ;;       --stack-name=*) arg_stack=${a#*=} ;;
    --region) arg_region=$next ;;          --region=*) arg_region=${a#*=} ;;
    --profile) arg_profile=$next ;;        --profile=*) arg_profile=${a#*=} ;;
    --parameter-overrides) arg_overrides=$next ;; --parameter-overrides=*) arg_overrides=${a#*=} ;;
  esac
done

# Sets cfg_stack, cfg_region, cfg_profile, cfg_has_overrides (saved parameter overrides?) and
# cfg_arch (the Architecture among the given or saved overrides) from samconfig.toml, the deploy
# section over the global one, as SAM reads them. Read again after a guided deploy saved answers.
read_config() {
  eval "$("$python" - "$repo/samconfig.toml" "$config_env" "$arg_overrides" <<'PY'
import shlex, sys, tomllib
path, env, arg_overrides = sys.argv[1:]
try:
    with open(path, "rb") as f:
        config = tomllib.load(f).get(env, {})
except FileNotFoundError:
    config = {}
params = {**config.get("global", {}).get("parameters", {}), **config.get("deploy", {}).get("parameters", {})}
def overrides(value):
    items = value if isinstance(value, list) else [value]
    pairs = [w.split("=", 1) for item in items for w in shlex.split(item or "") if "=" in w]
    return {k: v for k, v in pairs}
saved = overrides(params.get("parameter_overrides", ""))
given = overrides(arg_overrides)
out = {
    "cfg_stack": params.get("stack_name", "notion-llm"),
    "cfg_region": params.get("region", ""),
    "cfg_profile": params.get("profile", ""),
    "cfg_has_overrides": "1" if saved else "",
    "cfg_arch": given.get("Architecture") or saved.get("Architecture", ""),
    "cfg_secrets_path": given.get("SecretsPath") or saved.get("SecretsPath", "/notion-llm"),
    "cfg_database": given.get("NotionDatabaseId") or saved.get("NotionDatabaseId", ""),
}
for k, v in out.items():
    print(f"{k}={shlex.quote(v)}")
PY
)"
  stack=${arg_stack:-$cfg_stack}
  region=${arg_region:-$cfg_region}
  profile=${arg_profile:-$cfg_profile}
}
read_config

if [ -z "$cfg_has_overrides" ] && [ -z "$arg_overrides" ] && [ "$guided" = 0 ]; then
  die "no saved deploy parameters in samconfig.toml [$config_env]; run: scripts/deploy.sh --guided"
fi
arch=${ARCHITECTURE:-${cfg_arch:-arm64}}
case "$arch" in arm64 | x86_64) ;; *) die "Architecture must be arm64 or x86_64, not '$arch'" ;; esac
if [ -n "$cfg_arch" ] && [ "$arch" != "$cfg_arch" ] && [ "$guided" = 0 ]; then
  die "ARCHITECTURE=$arch but the deploy parameters say Architecture=$cfg_arch; run with --guided and answer $arch"
fi
rust_targets=$(rustup target list --installed 2>/dev/null || true)
if [ "$arch" = arm64 ] && command -v rustup >/dev/null && ! grep -qx aarch64-unknown-linux-gnu <<<"$rust_targets"; then
  say "note: cargo-lambda will ask rustup for the aarch64-unknown-linux-gnu target (or use ARCHITECTURE=x86_64)"
fi

# --- Before building: credentials, the secrets, the questions database --------------------------
# Each failure says what to do; nothing is built or deployed until all pass.
precheck() {
  "$python" - "$region" "$profile" "$cfg_secrets_path" "$cfg_database" "$guided" <<'PY'
import os, shutil, subprocess, sys
region, profile, path, database, guided = sys.argv[1:]
def fail(message):
    print(f"deploy: error: {message}", file=sys.stderr)
    sys.exit(1)
try:
    import boto3, botocore.exceptions as aws
except ImportError:
    fail("boto3 is missing from the SAM CLI's Python; run scripts/setup.sh")
session = boto3.Session(profile_name=profile or None, region_name=region or os.environ.get("AWS_REGION") or None)
if not session.region_name:
    if guided == "1":
        print("deploy: no Region yet (the guided deploy asks for it): the credentials, secrets and database "
              "are checked on the next deploy")
        sys.exit(0)
    fail("no AWS Region: set AWS_REGION, or answer the Region in `scripts/deploy.sh --guided`")
try:
    identity = session.client("sts").get_caller_identity()
except aws.NoCredentialsError:
    fail("no AWS credentials: run `aws configure` or `aws sso login`, or set AWS_PROFILE (see infra/README.md)")
except (aws.ClientError, aws.BotoCoreError) as error:
    fail(f"the AWS credentials do not work: {error}")
print(f"deploy: deploying as {identity['Arn']} (account {identity['Account']}) in {session.region_name}")
required = ["notion-api-key", "cloud-api-key", "agent-token"]
optional = ["openrouter-api-key", "notion-webhook-token"]
try:
    found = session.client("ssm").get_parameters(Names=[f"{path}/{name}" for name in required + optional])
except (aws.ClientError, aws.BotoCoreError) as error:
    fail(f"cannot read the SSM parameters under {path}: {error}")
missing = {name.rsplit("/", 1)[-1] for name in found.get("InvalidParameters", [])}
if missing & set(required):
    names = " ".join(name for name in required if name in missing)
    fail(f"SSM parameters missing under {path} in {session.region_name}: {names}. Store them as infra/README.md "
         f"shows (P={path}; then `put <name>` for each), then deploy again")
for name in optional:
    if name in missing:
        print(f"deploy: note: no {path}/{name} (optional: "
              + ("answers will quote the best passages instead of an LLM's)" if name == "openrouter-api-key"
                 else "the webhook's verification token is taken from its first handshake)"))
if not database:
    print("deploy: the questions database is checked once NotionDatabaseId is saved (after the guided deploy)")
    sys.exit(0)
cloud_fn = shutil.which("cloud-fn") or next((p for p in ["target/release/cloud-fn", "target/debug/cloud-fn"] if os.access(p, os.X_OK)), None)
if not cloud_fn:
    print("deploy: note: the questions database was not checked: no cloud-fn binary "
          "(scripts/install.sh --with-cloud-fn, or cargo build --release -p cloud-fn)")
    sys.exit(0)
token = session.client("ssm").get_parameter(Name=f"{path}/notion-api-key", WithDecryption=True)["Parameter"]["Value"]
env = {**os.environ, "NOTION_API_KEY": token, "NOTION_DATABASE_ID": database}
if subprocess.run([cloud_fn, "notion", "check"], env=env).returncode != 0:
    fail(f"the questions database {database} is not ready (above: what to add); fix it in Notion and deploy again")
PY
}
if [ "${DEPLOY_SKIP_CHECKS:-0}" = 1 ]; then
  say "skipping the pre-deploy checks (DEPLOY_SKIP_CHECKS=1)"
else
  precheck
fi

# --- Build --------------------------------------------------------------------------------------
# Builds in the workspace (cargo lambda build --release [--arm64] --bin cloud-fn-lambda) and copies
# only the bootstrap binary to target/sam (samconfig.toml: build_dir).
say "building cloud-fn-lambda for $arch"
sam build --config-env "$config_env" --parameter-overrides "Architecture=$arch"

# --- Deploy -------------------------------------------------------------------------------------
deploy_args=("$@")
if [ "$guided" = 1 ] && [ -z "$cfg_has_overrides" ] && [ -z "$arg_overrides" ]; then
  # First guided run: make the built architecture the default answer of the prompt.
  deploy_args+=(--parameter-overrides "Architecture=$arch")
  say "answer Architecture=$arch at the prompt (the binary was built for it)"
fi
sam deploy "${deploy_args[@]}"

# --- What the agent needs -----------------------------------------------------------------------
[ "$guided" = 1 ] && read_config # the answers may have changed the stack name or Region
list_args=(--stack-name "$stack" --output json)
[ -n "$region" ] && list_args+=(--region "$region")
[ -n "$profile" ] && list_args+=(--profile "$profile")
if ! outputs=$(sam list stack-outputs "${list_args[@]}"); then
  die "could not read the outputs of stack $stack (was the change set applied?)"
fi
"$python" - "$outputs" <<'PY'
import json, sys
outputs = {o["OutputKey"]: o["OutputValue"] for o in json.loads(sys.argv[1])}
secrets = outputs.get("SecretsPath", "?")
print(f"""
Deployed. Next steps:
  1. Connect your agent: add to its config.toml ([cloud]) or environment
       CLOUD_URL={outputs["CloudUrl"]}
     and AGENT_TOKEN, the value stored at {secrets}/agent-token; `local-agent init --cloud-url <it>`
     writes both for a new agent.
  2. Have Notion notify the function of new questions (optional; it polls on its schedule too):
     a webhook subscription in your integration's settings to
       {outputs["WebhookUrl"]}
  3. Check it end to end (CLOUD_API_KEY is the value stored at {secrets}/cloud-api-key):
       curl -s {outputs["FunctionUrl"]}health
       curl -s -H "Authorization: Bearer $CLOUD_API_KEY" {outputs["FunctionUrl"]}status
       cloud-fn doctor --server {outputs["FunctionUrl"]}
  For the commands in infra/README.md:
       export CLOUD_URL={outputs["CloudUrl"]} FUNCTION_URL={outputs["FunctionUrl"]}
""")
PY
