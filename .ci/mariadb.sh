#!/usr/bin/env bash
# A MariaDB server for the MySQL-path tests, on Debian without systemd (run as root).
#
# Installs mariadb-server if it is missing, starts it on 127.0.0.1 unless it already answers,
# creates the test database and a password user for TCP (root only works over the unix socket),
# and prints one line for the caller to evaluate:
#
#     eval "$(bash .ci/mariadb.sh)"   # sets PINTREST_TEST_MYSQL_URL
#
# Safe to run again: every step checks before it acts. Progress goes to stderr so that stdout
# holds nothing but the export line.
set -euo pipefail

PORT="${PINTREST_TEST_MYSQL_PORT:-3306}"
DATABASE="pintrest_test"
USER_NAME="pintrest"
PASSWORD="${PINTREST_TEST_MYSQL_PASSWORD:-pintrest-test}"
DATADIR="/var/lib/mysql"
LOG="/var/log/mariadb-pintrest.log"

log() { echo "mariadb.sh: $*" >&2; }

if ! command -v mariadbd >/dev/null 2>&1; then
    log "installing mariadb-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq mariadb-server >&2
fi

mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld

answers() { mariadb-admin --protocol=socket ping >/dev/null 2>&1; }

if ! answers; then
    if [ ! -d "$DATADIR/mysql" ]; then
        log "initialising $DATADIR"
        mariadb-install-db --user=mysql --datadir="$DATADIR" >&2
    fi
    log "starting mariadbd on 127.0.0.1:$PORT (log: $LOG)"
    # Its own session and no inherited stdout: `$(...)` in the caller returns at once, and the
    # server outlives this script.
    setsid mariadbd --user=mysql --datadir="$DATADIR" --bind-address=127.0.0.1 --port="$PORT" \
        </dev/null >>"$LOG" 2>&1 &
    for _ in $(seq 1 60); do
        answers && break
        sleep 0.5
    done
    answers || { log "mariadbd did not answer within 30 s; see $LOG"; tail -n 20 "$LOG" >&2; exit 1; }
fi

# The tests create a scratch database per run (pintrest_test_<random>) so that parallel runs
# never share tables: the user may create and drop any database named pintrest_test*.
mariadb --protocol=socket <<SQL
CREATE DATABASE IF NOT EXISTS \`$DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS '$USER_NAME'@'localhost' IDENTIFIED BY '$PASSWORD';
ALTER USER '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
ALTER USER '$USER_NAME'@'localhost' IDENTIFIED BY '$PASSWORD';
GRANT ALL PRIVILEGES ON \`${DATABASE}%\`.* TO '$USER_NAME'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`${DATABASE}%\`.* TO '$USER_NAME'@'localhost';
FLUSH PRIVILEGES;
SQL

log "ready: database $DATABASE on 127.0.0.1:$PORT"
echo "export PINTREST_TEST_MYSQL_URL='mysql+pymysql://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$DATABASE?charset=utf8mb4'"
