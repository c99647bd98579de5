# Reference values for rectify's calibration weighting, computed with R's survey package.
#
# Run from this folder:  Rscript make_reference.R
# Needs: r-base-core, r-cran-survey (4.1), r-cran-mass.  Writes (17 significant digits):
#   apistrat.csv, apipop.csv          the data (columns rectify's tests need)
#   weights.csv                       calibrated weights, one column per case, rows as apistrat.csv
#   estimates.csv                     case, statistic, term, estimate, std_error
#   repweights_boot.csv, rep_meta.csv   replicate designs (bootstrap weights; scales of both)
# rake() is run with a tight tolerance (its defaults maxit=10, epsilon=1 are loose).
suppressMessages(library(survey))
data(api)
options(survey.lonely.psu = "fail")
fmt <- function(x) sprintf("%.17g", x)

keep_s <- c("snum", "stype", "sch.wide", "awards", "comp.imp", "api00", "api99", "ell",
            "meals", "mobility", "enroll", "pw", "fpc")
strat <- apistrat[, keep_s]
names(strat) <- gsub(".", "_", names(strat), fixed = TRUE)
write.csv(data.frame(lapply(strat, function(v) if (is.numeric(v)) fmt(v) else as.character(v))),
          "apistrat.csv", row.names = FALSE, quote = FALSE)
pop <- apipop[, c("snum", "stype", "sch.wide", "awards", "api99")]
names(pop) <- gsub(".", "_", names(pop), fixed = TRUE)
write.csv(data.frame(lapply(pop, function(v) if (is.numeric(v)) fmt(v) else as.character(v))),
          "apipop.csv", row.names = FALSE, quote = FALSE)

dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, data = apistrat, fpc = ~fpc)
N <- nrow(apipop)
pop_types <- data.frame(stype = c("E", "H", "M"), Freq = c(4421, 755, 1018))
pop_schwide <- data.frame(sch.wide = c("No", "Yes"), Freq = as.vector(table(apipop$sch.wide)))
pop_awards <- data.frame(awards = c("No", "Yes"), Freq = as.vector(table(apipop$awards)))
tot_lin <- c(`(Intercept)` = N, stypeH = 755, stypeM = 1018, api99 = sum(apipop$api99))
tot_aw <- c(`(Intercept)` = N, stypeH = 755, stypeM = 1018, api99 = sum(apipop$api99),
            awardsYes = sum(apipop$awards == "Yes"))
ps_pop <- as.data.frame(table(sch.wide = apipop$sch.wide, awards = apipop$awards))

tight <- list(maxit = 1000, epsilon = 1e-15)
designs <- list(
  unweighted_cal = dstrat,
  rake = rake(dstrat, list(~stype, ~sch.wide, ~awards), list(pop_types, pop_schwide, pop_awards),
              control = tight),
  linear = calibrate(dstrat, ~stype + api99, tot_lin, calfun = "linear", epsilon = 1e-13,
                     maxit = 200),
  raking = calibrate(dstrat, ~stype + api99 + awards, tot_aw, calfun = "raking",
                     epsilon = 1e-13, maxit = 200),
  logit = calibrate(dstrat, ~stype + api99 + awards, tot_aw, calfun = "logit",
                    bounds = c(0.85, 1.15), epsilon = 1e-13, maxit = 200),
  truncated = calibrate(dstrat, ~stype + api99 + awards, tot_aw, calfun = "linear",
                        bounds = c(0.85, 1.15), epsilon = 1e-13, maxit = 200),
  raking_bounded = calibrate(dstrat, ~stype + api99 + awards, tot_aw, calfun = "raking",
                             bounds = c(0.85, 1.15), epsilon = 1e-13, maxit = 200),
  raking_trim = suppressMessages(calibrate(dstrat, ~stype + api99 + awards, tot_aw,
                        calfun = "raking", trim = c(0.9, 1.1), epsilon = 1e-13, maxit = 200)),
  poststrat = postStratify(dstrat, ~sch.wide + awards, ps_pop)
)
lin <- designs$linear
designs$linear_trimweights <- trimWeights(lin, upper = 40, lower = 20)
designs$linear_trimweights_upper <- trimWeights(lin, upper = 45)
designs$linear_trimweights_strict <- trimWeights(lin, upper = 45, strict = TRUE)

wts <- data.frame(lapply(designs, function(d) fmt(weights(d))))
write.csv(wts, "weights.csv", row.names = FALSE, quote = FALSE)

rows <- list()
add <- function(case, statistic, term, est, se) {
  rows[[length(rows) + 1]] <<- data.frame(case = case, statistic = statistic, term = term,
                                          estimate = fmt(est), std_error = fmt(se))
}
for (nm in names(designs)) {
  d <- designs[[nm]]
  m <- svymean(~api00 + ell, d); add(nm, "mean", names(coef(m)), coef(m), SE(m))
  t <- svytotal(~api00, d); add(nm, "total", "api00", coef(t), SE(t))
  s <- svymean(~comp.imp, d); add(nm, "shares", names(coef(s)), coef(s), SE(s))
  q <- svyquantile(~api00, d, quantiles = c(0.25, 0.5), ci = TRUE)
  add(nm, "quantile", c("0.25", "0.5"), q$api00[, "quantile"], q$api00[, "se"])
  f <- svyglm(api00 ~ ell + meals + mobility, design = d)
  add(nm, "ols", names(coef(f)), coef(f), SE(f))
  g <- suppressWarnings(svyglm(I(comp.imp == "Yes") ~ ell + meals, design = d,
                               family = quasibinomial(), control = glm.control(epsilon = 1e-15, maxit = 100)))
  add(nm, "logit", names(coef(g)), coef(g), SE(g))
}

# replicate-weight variance: JKn jackknife and a seeded subbootstrap, recalibrated per replicate
rep_cases <- list()
jk <- as.svrepdesign(dstrat, type = "JKn")
set.seed(20261127)
bs <- as.svrepdesign(dstrat, type = "subbootstrap", replicates = 50)
for (kind in c("jkn", "boot")) {
  rd <- if (kind == "jkn") jk else bs
  rw <- weights(rd, "analysis")
  if (kind == "boot")  # JKn is deterministic: rectify rebuilds it (tests compare rscales and SEs)
    write.csv(data.frame(apply(rw, 2, fmt)), paste0("repweights_", kind, ".csv"),
              row.names = FALSE, quote = FALSE)
  rep_cases[[kind]] <- data.frame(kind = kind, replicate = seq_len(ncol(rw)),
                                  scale = fmt(rd$scale), rscales = fmt(rd$rscales))
  cal <- calibrate(rd, ~stype + api99, tot_lin, calfun = "linear")
  m <- svymean(~api00 + ell, cal); add(paste0(kind, "_linear"), "mean", names(coef(m)), coef(m), SE(m))
  calr <- calibrate(rd, ~stype + api99 + awards, tot_aw, calfun = "raking", epsilon = 1e-13,
                    maxit = 200)
  m <- svymean(~api00 + ell, calr); add(paste0(kind, "_raking"), "mean", names(coef(m)), coef(m), SE(m))
  f <- svyglm(api00 ~ ell + meals + mobility, design = cal)
  add(paste0(kind, "_linear"), "ols", names(coef(f)), coef(f), SE(f))
  m0 <- svymean(~api00, rd); add(paste0(kind, "_none"), "mean", "api00", coef(m0), SE(m0))
}
write.csv(do.call(rbind, rep_cases), "rep_meta.csv", row.names = FALSE, quote = FALSE)
write.csv(do.call(rbind, rows), "estimates.csv", row.names = FALSE, quote = FALSE)
writeLines(capture.output(sessionInfo()), "sessionInfo.txt")
