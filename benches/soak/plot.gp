# The soak benchmark's plot (run by benches/soak.sh):
#   gnuplot -e "dir='bench-results/soak-...'; dur=3600" benches/soak/plot.gp
# Four panels over minutes: pgweir's RSS; its open fds with the server connections it lists
# and the bench backends each node has; completed actions per second with errors per 10 s;
# the latency of reads and writes (p50, p99, max per 10 s). Events come from dir/events.gp
# (written by report.py): RELOADs grey, the rest red and labelled in the top panel.
set terminal pngcairo size 1400,1250 font ',10'
set output dir.'/soak.png'
set datafile separator ','
set grid
set xrange [0:dur / 60.0 + 0.5]
set lmargin 10
set rmargin 10
set offsets 0, 0, graph 0.25, 0
set key top left horizontal
in_run(t) = t <= dur + 1 ? t / 60 : NaN
set multiplot layout 4,1 title 'pgweir soak: '.sprintf('%g', dur / 60.0).' min (grey: RELOAD; samples after the last minute: the clients have gone)'

load dir.'/events.gp'
set title 'pgweir resident memory'
set ylabel 'MiB'
set yrange [0:*]
plot dir.'/samples.csv' using ($1 / 60):($2 / 1024) with linespoints pt 7 ps 0.4 lw 2 title 'RSS'

unset label
set title 'pgweir open file descriptors and server connections'
set ylabel 'count'
plot dir.'/samples.csv' using ($1 / 60):3 with linespoints pt 7 ps 0.4 lw 2 title 'open fds', \
     '' using ($1 / 60):6 with lines lw 1.5 title 'servers (SHOW SERVERS)', \
     '' using ($1 / 60):4 with lines lw 1 title 'bench backends, primary', \
     '' using ($1 / 60):5 with lines lw 1 title 'bench backends, replica'

set title 'throughput and errors'
set ylabel 'completed actions / s'
set y2label 'errors per 10 s'
set y2range [0:*]
set y2tics
set ytics nomirror
plot dir.'/progress.csv' using (in_run($1)):3 with lines lw 2 title 'actions/s', \
     '' using (in_run($1)):6 axes x1y2 with impulses lw 3 lc rgb '#cc0000' title 'errors per 10 s'

unset y2tics
unset y2label
set ytics mirror
set title 'latency of reads, writes, COPY, rollbacks (completed ones, per 10 s)'
set ylabel 'ms'
set logscale y
set yrange [*:*]
set offsets 0, 0, 0, 0
set xlabel 'minutes'
plot dir.'/progress.csv' using (in_run($1)):10 with lines lw 1.5 title 'p50', \
     '' using (in_run($1)):11 with lines lw 1.5 title 'p99', \
     '' using (in_run($1)):12 with lines lw 1 title 'max'
unset multiplot
