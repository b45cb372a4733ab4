#!/bin/sh
# Submit one recalculation DaskJob with a unique name, unless a previous one is still running.
# Run by the CronJob "imagerank-recalculate" in a small kubectl image; the DaskJob template is
# daskjob.yaml beside this script (both come from the ConfigMap "imagerank-recalculate-template").
#
# Environment:
#   DASKJOB_TEMPLATE  the template (default: the directory of this script / daskjob.yaml)
#   IMAGERANK_IMAGE   image of the scheduler, the workers and the runner (default: keep the template's)
#   DASK_WORKERS      number of worker pods (default: keep the template's)
#   KEEP_FINISHED     finished DaskJobs to keep for inspection, older ones are deleted (default: 3)
#   WORKDIR_CLAIM     a ReadWriteMany PersistentVolumeClaim to mount at /workdir in every pod of the run
#                     (default: none, the work directory is an object-store URL)
set -eu

here=$(dirname "$0")
template=${DASKJOB_TEMPLATE:-$here/daskjob.yaml}
keep=${KEEP_FINISHED:-3}
selector="app.kubernetes.io/name=imagerank,app.kubernetes.io/component=recalculate"
run="imagerank-recalculate-$(date -u +%Y%m%d-%H%M%S)"

# One "name status" line per recalculation DaskJob, oldest first. A job the operator has not yet given a
# status counts as running.
jobs=$(kubectl get daskjobs -l "$selector" --sort-by=.metadata.creationTimestamp \
  -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.jobStatus}{"\n"}{end}')

running=$(printf '%s\n' "$jobs" | awk 'NF >= 1 && $2 != "Successful" && $2 != "Failed" {print $1}')
if [ -n "$running" ]; then
  echo "a recalculation is still running ($(echo $running)); not submitting $run" >&2
  exit 0
fi

finished=$(printf '%s\n' "$jobs" | awk '$2 == "Successful" || $2 == "Failed" {print $1}')
excess=$(printf '%s\n' "$finished" | awk -v keep="$keep" 'NF {n++; name[n] = $1} END {for (i = 1; i <= n - keep; i++) print name[i]}')
for old in $excess; do
  kubectl delete daskjob "$old" --ignore-not-found --wait=false
done

set -- -e "s/imagerank-recalculate/$run/g"
if [ -n "${IMAGERANK_IMAGE:-}" ]; then
  set -- "$@" -e "s#image: imagerank:latest\$#image: $IMAGERANK_IMAGE#"
fi
if [ -n "${DASK_WORKERS:-}" ]; then
  case $DASK_WORKERS in
    *[!0-9]* | "") echo "DASK_WORKERS must be a number, got '$DASK_WORKERS'" >&2; exit 2 ;;
  esac
  set -- "$@" -e "s/^\( *replicas:\) [0-9][0-9]*\$/\1 $DASK_WORKERS/"
fi
case ${WORKDIR_CLAIM:-} in
  *[!a-z0-9.-]*) echo "WORKDIR_CLAIM must be a PersistentVolumeClaim name, got '$WORKDIR_CLAIM'" >&2; exit 2 ;;
esac
# With a claim: a "workdir" mount after every "volumeMounts:" and the claim after every "volumes:" line.
with_claim() {
  if [ -z "${WORKDIR_CLAIM:-}" ]; then cat; return; fi
  awk -v claim="$WORKDIR_CLAIM" '
    { print }
    /^ *volumeMounts:$/ { i = substr($0, 1, index($0, "v") - 1); print i "  - name: workdir"; print i "    mountPath: /workdir" }
    /^ *volumes:$/ { i = substr($0, 1, index($0, "v") - 1); print i "  - name: workdir"; print i "    persistentVolumeClaim:"; print i "      claimName: " claim }
  '
}
sed "$@" "$template" | with_claim | kubectl create -f -
echo "submitted daskjob/$run"
